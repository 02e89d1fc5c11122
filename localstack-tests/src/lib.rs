//! LocalStack integration tests live in tests/.
