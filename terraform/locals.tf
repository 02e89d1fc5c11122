locals {
  name_prefix   = "${var.project_name}-${var.environment}"
  artifacts_dir = coalesce(var.artifacts_dir, "${path.module}/../target/lambda")

  # One entry per Lambda crate under functions/ (infra/scripts/terraform-check.sh keeps the two
  # in step). Static data only: keys drive for_each everywhere.
  #   routes        HTTP API route keys sent to the function (payload format 2.0)
  #   ddb_write     item writes on the table (conditional writes / TransactWriteItems)
  #   usage_write   only PutItem on link and audit items (DS#…, AUDIT#… partitions): link usage
  #                 counters flushed by the chunk function
  #   s3_write      may write annotation bodies under var.annotations_prefix
  #   ses_send      may send mail as var.sender_email
  #   env           function-specific environment on top of local.common_env
  functions = {
    chunks = {
      description = "Serves dataset keys (metadata and chunks), volume annotations and Neuroglancer view states to viewers: GET/HEAD, ranges, CORS, presigned redirects; counts link usage."
      routes = [
        "GET /data/{proxy+}",
        "HEAD /data/{proxy+}",
        "OPTIONS /data/{proxy+}",
        "GET /s/{proxy+}",
        "HEAD /s/{proxy+}",
        "OPTIONS /s/{proxy+}",
        "GET /ng/{proxy+}",
        "OPTIONS /ng/{proxy+}",
        "GET /u/{proxy+}",
        "HEAD /u/{proxy+}",
        "OPTIONS /u/{proxy+}",
        "GET /files/{proxy+}",
        "OPTIONS /files/{proxy+}",
      ]
      memory_mb   = 1024
      timeout_s   = 30
      ddb_write   = false
      usage_write = true
      s3_write    = false
      ses_send    = false
      env = {
        ZARRSHARE_DELIVERY         = var.chunks_delivery
        ZARRSHARE_SIGNING_SECRET   = var.signing_secret
        ZARRSHARE_USAGE_FLUSH_SECS = tostring(var.usage_flush_secs)
        ZARRSHARE_NEUROGLANCER_URL = var.neuroglancer_url
      }
    }
    datasets = {
      description = "The datasets API: registering datasets, share links, per-person shares (with invitation mail), the gallery, thumbnails, QR codes, the audit trail."
      routes = [
        "ANY /api/datasets",
        "ANY /api/datasets/{proxy+}",
        "ANY /api/links",
        "ANY /api/links/{proxy+}",
        "ANY /api/gallery",
        "ANY /api/qr",
        "GET /api/openapi.json",
      ]
      memory_mb   = 1024 # Argon2id link passwords and thumbnail rendering
      timeout_s   = 15
      ddb_write   = true
      usage_write = false
      # Nothing writes annotation bodies here yet: granted when a route needs it.
      s3_write = false
      ses_send = true
      env = {
        ZARRSHARE_JWT_SECRET       = var.jwt_secret
        ZARRSHARE_SENDER_EMAIL     = var.sender_email
        ZARRSHARE_SIGNING_SECRET   = var.signing_secret
        ZARRSHARE_NEUROGLANCER_URL = var.neuroglancer_url
      }
    }
    annotations = {
      description = "The annotations API: skeleton and volume annotations with versioned saves, visibility, team sharing, copies, view links, NML downloads."
      routes = [
        "ANY /api/annotations",
        "ANY /api/annotations/{proxy+}",
      ]
      memory_mb   = 1024
      timeout_s   = 15
      ddb_write   = true
      usage_write = false
      s3_write    = true # version bodies over 32 KB and volume buckets, under var.annotations_prefix
      ses_send    = false
      env = {
        ZARRSHARE_JWT_SECRET = var.jwt_secret
      }
    }
    accounts = {
      description = "The accounts API: organizations, sign-up and login, activation, teams, experience, e-mail invitations."
      routes = [
        "ANY /api/organizations",
        "ANY /api/auth/{proxy+}",
        "ANY /api/me",
        "ANY /api/users",
        "ANY /api/users/{proxy+}",
        "ANY /api/teams",
        "ANY /api/invites",
        "ANY /api/invites/{proxy+}",
      ]
      memory_mb   = 1024 # Argon2id hashing wants memory and the CPU that comes with it
      timeout_s   = 15
      ddb_write   = true
      usage_write = false
      s3_write    = false
      ses_send    = true
      env = {
        ZARRSHARE_JWT_SECRET   = var.jwt_secret
        ZARRSHARE_SENDER_EMAIL = var.sender_email
      }
    }
  }

  function_names = { for k, _ in local.functions : k => "${local.name_prefix}-${k}" }

  # "GET /data/{proxy+}" => { function = "chunks", route_key = ... } for every route of every function.
  routes = merge([
    for fn, cfg in local.functions : { for r in cfg.routes : r => { function = fn, route_key = r } }
  ]...)

  common_env = {
    ZARRSHARE_TABLE                 = aws_dynamodb_table.main.name
    ZARRSHARE_DATA_BUCKET           = aws_s3_bucket.data.id
    ZARRSHARE_ACCESS_CACHE_TTL_SECS = tostring(var.access_cache_ttl_secs)
    ZARRSHARE_PUBLIC_BASE_URL       = coalesce(var.public_base_url, aws_apigatewayv2_api.main.api_endpoint)
    ZARRSHARE_ANNOTATIONS_PREFIX    = var.annotations_prefix
    RUST_LOG                        = var.log_level
  }

  dataset_bucket_arns = concat(
    [aws_s3_bucket.data.arn],
    [for b in var.extra_dataset_buckets : "arn:${data.aws_partition.current.partition}:s3:::${b}"],
  )
  table_arns = [aws_dynamodb_table.main.arn, "${aws_dynamodb_table.main.arn}/index/*"]
}
