# Offline plan tests: `terraform test` from terraform/ (no AWS account, no network).
# The AWS provider is mocked; override_during = plan makes the mocks fill computed attributes
# (ARNs, ids) at plan time so that policies and wiring are known values we can assert on.

mock_provider "aws" {
  override_during = plan

  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
  mock_resource "aws_dynamodb_table" {
    defaults = {
      arn = "arn:aws:dynamodb:us-east-1:123456789012:table/zarrshare-test"
    }
  }
  mock_resource "aws_s3_bucket" {
    defaults = {
      arn = "arn:aws:s3:::zarrshare-test-data-123456789012"
    }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = {
      arn = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/mock"
    }
  }
  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/mock"
    }
  }
  mock_resource "aws_ses_email_identity" {
    defaults = {
      arn = "arn:aws:ses:us-east-1:123456789012:identity/noreply@example.org"
    }
  }
  mock_resource "aws_lambda_function" {
    defaults = {
      invoke_arn = "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:mock/invocations"
    }
  }
  mock_resource "aws_apigatewayv2_api" {
    defaults = {
      api_endpoint  = "https://abc123.execute-api.us-east-1.amazonaws.com"
      execution_arn = "arn:aws:execute-api:us-east-1:123456789012:abc123"
    }
  }
}

# Distinct integration ids, so that "each route targets its own function" is really checked.
override_resource {
  target          = aws_apigatewayv2_integration.fn["accounts"]
  override_during = plan
  values = {
    id = "integration-accounts"
  }
}
override_resource {
  target          = aws_apigatewayv2_integration.fn["chunks"]
  override_during = plan
  values = {
    id = "integration-chunks"
  }
}
override_resource {
  target          = aws_apigatewayv2_integration.fn["annotations"]
  override_during = plan
  values = {
    id = "integration-annotations"
  }
}
override_resource {
  target          = aws_apigatewayv2_integration.fn["datasets"]
  override_during = plan
  values = {
    id = "integration-datasets"
  }
}

variables {
  environment    = "test"
  admin_key      = "test-admin-key-0123456789abcdef0123456789"
  jwt_secret     = "test-jwt-secret-0123456789abcdef0123456789"
  signing_secret = "test-signing-secret-0123456789abcdef01234"
  sender_email   = "noreply@example.org"
  artifacts_dir  = "/nonexistent/lambda-artifacts"
}

run "every_function_is_wired" {
  command = plan

  assert {
    condition     = toset(keys(aws_lambda_function.fn)) == toset(["accounts", "annotations", "chunks", "datasets"])
    error_message = "Expected exactly the accounts, annotations, chunks and datasets functions."
  }

  assert {
    condition = alltrue([
      for k in keys(local.functions) :
      contains(keys(aws_lambda_function.fn), k) &&
      contains(keys(aws_iam_role.fn), k) &&
      contains(keys(aws_iam_role_policy.fn), k) &&
      contains(keys(aws_cloudwatch_log_group.fn), k) &&
      contains(keys(aws_apigatewayv2_integration.fn), k) &&
      contains(keys(aws_lambda_permission.api), k)
    ])
    error_message = "Every function needs a lambda function, role, policy, log group, integration and invoke permission."
  }

  assert {
    condition = alltrue([
      for k, f in aws_lambda_function.fn :
      f.runtime == "provided.al2023" && f.architectures == tolist(["x86_64"]) && f.handler == "bootstrap" &&
      f.filename == "/nonexistent/lambda-artifacts/${k}/bootstrap.zip"
    ])
    error_message = "Functions must be provided.al2023 / x86_64 (default) / bootstrap zips from artifacts_dir (hash guarded when absent)."
  }

  assert {
    condition = alltrue([
      for k, f in aws_lambda_function.fn :
      f.role == aws_iam_role.fn[k].arn &&
      aws_iam_role_policy.fn[k].role == aws_iam_role.fn[k].id &&
      aws_cloudwatch_log_group.fn[k].name == "/aws/lambda/${f.function_name}" &&
      f.logging_config[0].log_group == aws_cloudwatch_log_group.fn[k].name &&
      aws_cloudwatch_log_group.fn[k].retention_in_days == 30
    ])
    error_message = "Each function must use its own role and its own log group (with retention)."
  }

  assert {
    condition = alltrue([
      for k, i in aws_apigatewayv2_integration.fn :
      i.integration_uri == aws_lambda_function.fn[k].invoke_arn &&
      i.payload_format_version == "2.0" && i.integration_type == "AWS_PROXY"
    ])
    error_message = "Each integration must proxy to its function with payload format 2.0."
  }

  assert {
    condition = toset(keys(aws_apigatewayv2_route.fn)) == toset([
      "GET /data/{proxy+}", "HEAD /data/{proxy+}", "OPTIONS /data/{proxy+}",
      "GET /s/{proxy+}", "HEAD /s/{proxy+}", "OPTIONS /s/{proxy+}",
      "GET /ng/{proxy+}", "OPTIONS /ng/{proxy+}",
      "GET /u/{proxy+}", "HEAD /u/{proxy+}", "OPTIONS /u/{proxy+}",
      "GET /files/{proxy+}", "OPTIONS /files/{proxy+}",
      "ANY /api/datasets", "ANY /api/datasets/{proxy+}", "GET /api/openapi.json",
      "ANY /api/links", "ANY /api/links/{proxy+}", "ANY /api/gallery", "ANY /api/qr",
      "ANY /api/annotations", "ANY /api/annotations/{proxy+}",
      "ANY /api/organizations", "ANY /api/auth/{proxy+}", "ANY /api/me", "ANY /api/users", "ANY /api/users/{proxy+}",
      "ANY /api/teams", "ANY /api/invites", "ANY /api/invites/{proxy+}",
    ])
    error_message = "Unexpected set of routes."
  }

  assert {
    condition = alltrue([
      for rk, r in aws_apigatewayv2_route.fn :
      r.route_key == rk && r.target == "integrations/${aws_apigatewayv2_integration.fn[local.routes[rk].function].id}"
    ])
    error_message = "Every route must target its own function's integration."
  }

  assert {
    condition = alltrue([
      for rk in keys(aws_apigatewayv2_route.fn) : local.routes[rk].function == (
        length(regexall("^[A-Z]+ /(data|s|ng|u|files)/", rk)) > 0 ? "chunks" :
        length(regexall("^[A-Z]+ /api/(datasets|openapi|links|gallery|qr)", rk)) > 0 ? "datasets" :
        length(regexall("^[A-Z]+ /api/annotations", rk)) > 0 ? "annotations" : "accounts"
      )
    ])
    error_message = "Chunk routes must go to chunks, dataset routes to datasets, account routes to accounts."
  }
}

run "gateway_leaves_cors_to_the_functions" {
  command = plan

  assert {
    condition     = length(aws_apigatewayv2_api.main.cors_configuration) == 0
    error_message = "CORS must be off at the gateway (the functions answer it, including OPTIONS)."
  }

  assert {
    condition     = aws_apigatewayv2_api.main.protocol_type == "HTTP"
    error_message = "Expected an HTTP API."
  }

  assert {
    condition = (
      aws_apigatewayv2_stage.default.name == "$default" && aws_apigatewayv2_stage.default.auto_deploy &&
      aws_apigatewayv2_stage.default.default_route_settings[0].throttling_rate_limit == 1000 &&
      aws_apigatewayv2_stage.default.default_route_settings[0].throttling_burst_limit == 2000
    )
    error_message = "Expected an auto-deployed $default stage with the throttling variables applied."
  }

  assert {
    condition     = alltrue([for p in aws_lambda_permission.api : p.principal == "apigateway.amazonaws.com" && p.source_arn == "arn:aws:execute-api:us-east-1:123456789012:abc123/*/*"])
    error_message = "Each function must allow invocation by this API only."
  }
}

run "least_privilege_policies" {
  command = plan

  # chunks: reads, plus PutItem on link and audit items only (usage counters). No other
  # DynamoDB write, no S3 write, no SES.
  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.fn["chunks"].policy).Statement :
      s.Action == ["dynamodb:PutItem"] && s.Condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == ["DS#*", "AUDIT#*"]
      if length([for a in s.Action : a if can(regex("^dynamodb:(Put|Update|Delete|BatchWrite|TransactWrite|ConditionCheck|Create|Restore|Import)", a))]) > 0
    ])
    error_message = "The chunks role may only PutItem, and only on DS#/AUDIT# partitions."
  }

  assert {
    condition = toset(flatten([for s in jsondecode(aws_iam_role_policy.fn["chunks"].policy).Statement : s.Action])) == toset([
      "logs:CreateLogStream", "logs:PutLogEvents", "dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "s3:GetObject", "s3:ListBucket",
    ])
    error_message = "The chunks role must have exactly: own logs, GetItem/Query, PutItem (usage), GetObject/ListBucket."
  }

  assert {
    condition     = !strcontains(aws_iam_role_policy.fn["chunks"].policy, "\"*\"") && !strcontains(aws_iam_role_policy.fn["datasets"].policy, "\"Resource\":\"*\"")
    error_message = "No statement may use a wildcard resource."
  }

  assert {
    condition = alltrue([
      for a in ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:ConditionCheckItem", "s3:GetObject", "s3:ListBucket"] :
      contains(flatten([for s in jsondecode(aws_iam_role_policy.fn["datasets"].policy).Statement : s.Action]), a)
    ])
    error_message = "The datasets role needs item reads/writes (for TransactWriteItems) and dataset reads."
  }

  assert {
    condition = alltrue([
      for k, p in aws_iam_role_policy.fn : alltrue([
        for s in jsondecode(p.policy).Statement :
        s.Resource == ["${aws_s3_bucket.data.arn}/annotations/*"]
        if contains(s.Action, "s3:PutObject") || contains(s.Action, "s3:DeleteObject")
      ])
    ])
    error_message = "A function may write or delete in the data bucket only under the annotations prefix."
  }

  assert {
    condition = (
      length([for s in jsondecode(aws_iam_role_policy.fn["annotations"].policy).Statement : s if contains(s.Action, "s3:PutObject")]) == 1 &&
      length(flatten([for k in ["accounts", "chunks", "datasets"] : [for s in jsondecode(aws_iam_role_policy.fn[k].policy).Statement : s if contains(s.Action, "s3:PutObject") || contains(s.Action, "s3:DeleteObject")]])) == 0
    )
    error_message = "Only the annotations function writes or deletes objects (version bodies, volume buckets)."
  }

  assert {
    condition = contains(
      flatten([for s in jsondecode(aws_iam_role_policy.fn["datasets"].policy).Statement : s.Resource if contains(s.Action, "dynamodb:Query")]),
      "${aws_dynamodb_table.main.arn}/index/*"
    )
    error_message = "Query must be allowed on the table's indexes (GSI1)."
  }

  assert {
    condition = alltrue([
      for k, p in aws_iam_role_policy.fn :
      contains(flatten([for s in jsondecode(p.policy).Statement : s.Resource if contains(s.Action, "logs:PutLogEvents")]), "${aws_cloudwatch_log_group.fn[k].arn}:*")
    ])
    error_message = "Each function may only write its own log group."
  }
}

run "function_environment" {
  command = plan

  assert {
    condition = (
      aws_lambda_function.fn["chunks"].environment[0].variables["ZARRSHARE_SIGNING_SECRET"] == aws_lambda_function.fn["datasets"].environment[0].variables["ZARRSHARE_SIGNING_SECRET"] &&
      !contains(keys(aws_lambda_function.fn["accounts"].environment[0].variables), "ZARRSHARE_SIGNING_SECRET")
    )
    error_message = "chunks and datasets must share the unlock signing secret; accounts does not need it."
  }

  assert {
    condition = (
      aws_lambda_function.fn["chunks"].environment[0].variables["ZARRSHARE_DELIVERY"] == "redirect" &&
      aws_lambda_function.fn["chunks"].environment[0].variables["ZARRSHARE_ACCESS_CACHE_TTL_SECS"] == "30"
    )
    error_message = "chunks defaults: redirect delivery, 30 s access cache."
  }

  assert {
    condition = alltrue([
      for f in aws_lambda_function.fn :
      f.environment[0].variables["ZARRSHARE_TABLE"] == aws_dynamodb_table.main.name &&
      f.environment[0].variables["ZARRSHARE_DATA_BUCKET"] == aws_s3_bucket.data.id &&
      f.environment[0].variables["ZARRSHARE_PUBLIC_BASE_URL"] == "https://abc123.execute-api.us-east-1.amazonaws.com" &&
      f.environment[0].variables["ZARRSHARE_ADMIN_KEY"] == var.admin_key
    ])
    error_message = "Every function needs table, bucket, public base URL and admin key."
  }

  assert {
    condition     = issensitive(aws_lambda_function.fn["datasets"].environment[0].variables["ZARRSHARE_ADMIN_KEY"])
    error_message = "The admin key must stay sensitive."
  }
}

run "table_and_bucket" {
  command = plan

  assert {
    condition = (
      aws_dynamodb_table.main.billing_mode == "PAY_PER_REQUEST" &&
      aws_dynamodb_table.main.hash_key == "PK" && aws_dynamodb_table.main.range_key == "SK"
    )
    error_message = "Table must be on-demand with PK/SK keys."
  }

  assert {
    condition = anytrue([
      for g in aws_dynamodb_table.main.global_secondary_index :
      g.name == "GSI1" && g.hash_key == "GSI1PK" && g.range_key == "GSI1SK" && g.projection_type == "ALL"
    ])
    error_message = "Table must have GSI1 on GSI1PK/GSI1SK projecting ALL."
  }

  assert {
    condition     = aws_dynamodb_table.main.ttl[0].enabled && aws_dynamodb_table.main.ttl[0].attribute_name == "ttl"
    error_message = "TTL must be enabled on attribute ttl."
  }

  assert {
    condition     = aws_dynamodb_table.main.point_in_time_recovery[0].enabled && aws_dynamodb_table.main.server_side_encryption[0].enabled
    error_message = "Point-in-time recovery and server-side encryption must be on."
  }

  assert {
    condition = anytrue([
      for r in aws_s3_bucket_cors_configuration.data.cors_rule :
      contains(r.expose_headers, "Content-Range") && contains(r.expose_headers, "ETag") && contains(r.expose_headers, "Content-Length") &&
      contains(r.allowed_methods, "GET") && contains(r.allowed_methods, "HEAD") &&
      contains(r.allowed_origins, "*") && contains(r.allowed_headers, "*") && r.max_age_seconds == 3600
    ])
    error_message = "Bucket CORS must allow GET/HEAD from * and expose Content-Range, Content-Length, ETag."
  }

  assert {
    condition = (
      aws_s3_bucket_public_access_block.data.block_public_acls && aws_s3_bucket_public_access_block.data.block_public_policy &&
      aws_s3_bucket_public_access_block.data.ignore_public_acls && aws_s3_bucket_public_access_block.data.restrict_public_buckets
    )
    error_message = "The data bucket must block all public access."
  }

  assert {
    condition     = one(aws_s3_bucket_versioning.data.versioning_configuration).status == "Enabled"
    error_message = "Versioning defaults to enabled."
  }

  assert {
    condition     = aws_ses_email_identity.sender.email == "noreply@example.org"
    error_message = "SES identity must be the sender address."
  }
}

run "rejects_bad_delivery_mode" {
  command = plan

  variables {
    chunks_delivery = "stream"
  }

  expect_failures = [var.chunks_delivery]
}

run "rejects_short_admin_key" {
  command = plan

  variables {
    admin_key = "short"
  }

  expect_failures = [var.admin_key]
}
