terraform {
  # 1.11+: `terraform test` mocks that supply computed values during plan (override_during).
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 7"
    }
  }
}
