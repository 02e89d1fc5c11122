//! The single place where storage keys are spelled. Table layout (one table, `PK`/`SK`, one
//! index `GSI1PK`/`GSI1SK`):
//!
//! | item | PK | SK | GSI1PK | GSI1SK |
//! | --- | --- | --- | --- | --- |
//! | dataset | `DS#{id}` | `META` | `ORG#{org}#DATASETS` | `{folded name}` |
//! | dataset name claim | `ORG#{org}` | `DSNAME#{folded name}` | | |
//! | share link | `DS#{id}` | `LINK#{link id}` | | |
//! | token → link | `TOKEN#{sha256 hex}` | `TOKEN` | | |

use super::Key;
use crate::domain::{DatasetId, DatasetName, LinkId, OrgId, TokenHash};

pub fn dataset(id: &DatasetId) -> Key {
    Key::new(format!("DS#{id}"), "META")
}

pub fn dataset_in_org_index(org: &OrgId, name: &DatasetName) -> Key {
    Key::new(org_datasets_partition(org), name.folded())
}

pub fn org_datasets_partition(org: &OrgId) -> String {
    format!("ORG#{org}#DATASETS")
}

pub fn dataset_name_claim(org: &OrgId, name: &DatasetName) -> Key {
    Key::new(format!("ORG#{org}"), format!("DSNAME#{}", name.folded()))
}

pub fn link(dataset: &DatasetId, link: &LinkId) -> Key {
    Key::new(format!("DS#{dataset}"), format!("LINK#{link}"))
}

/// `(partition, sort-key prefix)` of a dataset's links.
pub fn links_of(dataset: &DatasetId) -> (String, &'static str) {
    (format!("DS#{dataset}"), "LINK#")
}

pub fn token(hash: &TokenHash) -> Key {
    Key::new(format!("TOKEN#{}", hash.to_hex()), "TOKEN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_do_not_collide_across_kinds() {
        let ds = DatasetId::generate();
        let l = LinkId::generate();
        let (pk, prefix) = links_of(&ds);
        assert_eq!(link(&ds, &l).pk, pk);
        assert!(link(&ds, &l).sk.starts_with(prefix));
        assert_eq!(dataset(&ds).pk, pk);
        assert!(!dataset(&ds).sk.starts_with(prefix));
    }
}
