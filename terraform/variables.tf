variable "aws_region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
}

variable "project_name" {
  description = "Prefix of every resource name (lowercase letters, digits, hyphens)."
  type        = string
  default     = "zarrshare"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.project_name))
    error_message = "project_name must be 3-32 characters of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Deployment stage, part of every resource name (e.g. dev, staging, prod)."
  type        = string
  default     = "dev"

  validation {
    condition     = can(regex("^[a-z0-9]{1,12}$", var.environment))
    error_message = "environment must be 1-12 lowercase letters or digits."
  }
}

variable "tags" {
  description = "Extra tags applied to every resource."
  type        = map(string)
  default     = {}
}

variable "artifacts_dir" {
  description = "Directory holding <function>/bootstrap.zip as built by infra/scripts/package-lambdas.sh (default: <repo>/target/lambda)."
  type        = string
  default     = null
}

variable "lambda_architecture" {
  description = "Lambda CPU architecture; must match how infra/scripts/package-lambdas.sh built the zips (LAMBDA_ARCH=x86-64 or arm64)."
  type        = string
  default     = "x86_64"
  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "lambda_architecture must be x86_64 or arm64."
  }
}

variable "lambda_memory_mb" {
  description = "Memory (MB) per function; functions not listed use 512 (chunks 1024)."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for m in values(var.lambda_memory_mb) : m >= 128 && m <= 10240])
    error_message = "Lambda memory must be between 128 and 10240 MB."
  }
}

variable "lambda_timeout_s" {
  description = "Timeout (seconds) per function; functions not listed use 15 (chunks 30). API Gateway gives up after 30 s."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for t in values(var.lambda_timeout_s) : t >= 1 && t <= 900])
    error_message = "Lambda timeout must be between 1 and 900 seconds."
  }
}

variable "log_retention_days" {
  description = "Retention of the functions' and the API's CloudWatch log groups."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ...)."
  }
}

variable "log_level" {
  description = "RUST_LOG filter of the functions."
  type        = string
  default     = "info"
}

variable "chunks_delivery" {
  description = "How the chunk function serves bytes: \"redirect\" to a short-lived presigned S3 URL, or \"proxy\" the bytes through Lambda."
  type        = string
  default     = "redirect"

  validation {
    condition     = contains(["redirect", "proxy"], var.chunks_delivery)
    error_message = "chunks_delivery must be \"redirect\" or \"proxy\"."
  }
}

variable "access_cache_ttl_secs" {
  description = "How long a function may cache an access decision; also the upper bound on how long a revoked link keeps working."
  type        = number
  default     = 30

  validation {
    condition     = var.access_cache_ttl_secs >= 0 && var.access_cache_ttl_secs <= 3600 && floor(var.access_cache_ttl_secs) == var.access_cache_ttl_secs
    error_message = "access_cache_ttl_secs must be a whole number of seconds between 0 and 3600."
  }
}

variable "admin_key" {
  description = "Bootstrap administrator key (ZARRSHARE_ADMIN_KEY). Stored in the functions' configuration: pass it via TF_VAR_admin_key, never in a committed file."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.admin_key) >= 32
    error_message = "admin_key must be at least 32 characters."
  }
}

variable "public_base_url" {
  description = "Public base URL the functions put in links (ZARRSHARE_PUBLIC_BASE_URL); default: the HTTP API's endpoint. Set it when a custom domain or CDN fronts the API."
  type        = string
  default     = null

  validation {
    condition     = var.public_base_url == null || can(regex("^https?://[^/]+(/.*[^/])?$", var.public_base_url))
    error_message = "public_base_url must be an http(s) URL without a trailing slash."
  }
}

variable "api_throttling_burst_limit" {
  description = "HTTP API default route burst limit (requests). Excess requests get 429."
  type        = number
  default     = 2000

  validation {
    condition     = var.api_throttling_burst_limit >= 0
    error_message = "api_throttling_burst_limit must not be negative."
  }
}

variable "api_throttling_rate_limit" {
  description = "HTTP API default route steady-state rate limit (requests per second). A viewer makes thousands of chunk requests."
  type        = number
  default     = 1000

  validation {
    condition     = var.api_throttling_rate_limit >= 0
    error_message = "api_throttling_rate_limit must not be negative."
  }
}

variable "table_name" {
  description = "DynamoDB table name; default <project>-<environment>."
  type        = string
  default     = null
}

variable "table_deletion_protection" {
  description = "Protect the DynamoDB table against deletion."
  type        = bool
  default     = true
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for the table and the data bucket; null uses AWS-managed encryption (DynamoDB: aws/dynamodb key, S3: SSE-S3)."
  type        = string
  default     = null
}

variable "data_bucket_name" {
  description = "Name of the data bucket (datasets and annotation bodies); default <project>-<environment>-data-<account id>."
  type        = string
  default     = null

  validation {
    condition     = var.data_bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.data_bucket_name))
    error_message = "data_bucket_name must be a valid S3 bucket name."
  }
}

variable "data_bucket_versioning" {
  description = "Enable object versioning on the data bucket."
  type        = bool
  default     = true
}

variable "data_bucket_force_destroy" {
  description = "Allow `terraform destroy` to delete a non-empty data bucket."
  type        = bool
  default     = false
}

variable "extra_dataset_buckets" {
  description = "Names of further existing buckets holding datasets, readable by the functions (read-only)."
  type        = list(string)
  default     = []
}

variable "annotations_prefix" {
  description = "Key prefix in the data bucket under which annotation bodies are written (the only place the functions may write)."
  type        = string
  default     = "annotations/"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]*/$", var.annotations_prefix))
    error_message = "annotations_prefix must be a single path segment ending in \"/\"."
  }
}

variable "cors_max_age_seconds" {
  description = "How long browsers may cache the data bucket's CORS preflight answer."
  type        = number
  default     = 3600
}

variable "sender_email" {
  description = "SES sender address of invitation and share emails (verified as an SES email identity)."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.sender_email))
    error_message = "sender_email must be an email address."
  }
}

variable "jwt_secret" {
  description = "HS256 key of the access tokens, shared by every function that authenticates users (at least 32 characters)."
  type        = string
  sensitive   = true
  validation {
    condition     = length(var.jwt_secret) >= 32
    error_message = "jwt_secret must be at least 32 characters."
  }
}

variable "signing_secret" {
  description = "HMAC key of link-password unlocks, shared by the chunks and datasets functions (at least 32 characters)."
  type        = string
  sensitive   = true
  validation {
    condition     = length(var.signing_secret) >= 32
    error_message = "signing_secret must be at least 32 characters."
  }
}

variable "usage_flush_secs" {
  description = "How often a chunk function instance writes the link usage it counted (at most this much is lost when an instance is recycled)."
  type        = number
  default     = 60
  validation {
    condition     = var.usage_flush_secs >= 1 && var.usage_flush_secs <= 3600
    error_message = "usage_flush_secs must be between 1 and 3600."
  }
}

variable "neuroglancer_url" {
  description = "The Neuroglancer deployment that view-state links open in."
  type        = string
  default     = "https://neuroglancer-demo.appspot.com/"
}
