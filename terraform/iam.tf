# One execution role per function, each with one inline least-privilege policy.

resource "aws_iam_role" "fn" {
  for_each = local.functions

  name        = "${local.function_names[each.key]}-lambda"
  description = "Execution role of the ${each.key} function"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = data.aws_caller_identity.current.account_id } }
    }]
  })
}

locals {
  # Read actions every function needs on the table. Query also on the GSIs.
  ddb_read_actions = ["dynamodb:GetItem", "dynamodb:Query"]
  # TransactWriteItems/conditional writes are authorized per item action: no Transact* action
  # exists in IAM for them, so Put/Update/Delete/ConditionCheckItem are what a transaction needs.
  ddb_write_actions = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem"]

  function_policy_statements = {
    for fn, cfg in local.functions : fn => concat(
      [
        {
          Sid      = "OwnLogs"
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
          Resource = ["${aws_cloudwatch_log_group.fn[fn].arn}:*"]
        },
        {
          Sid      = "TableRead"
          Effect   = "Allow"
          Action   = local.ddb_read_actions
          Resource = local.table_arns
        },
        {
          Sid      = "DatasetObjectsRead"
          Effect   = "Allow"
          Action   = ["s3:GetObject"]
          Resource = [for b in local.dataset_bucket_arns : "${b}/*"]
        },
        {
          # Without ListBucket S3 answers 403 instead of 404 for a missing key, and a missing
          # chunk must reach viewers as 404.
          Sid      = "DatasetBucketsList"
          Effect   = "Allow"
          Action   = ["s3:ListBucket"]
          Resource = local.dataset_bucket_arns
        },
      ],
      cfg.ddb_write ? [{
        Sid      = "TableWrite"
        Effect   = "Allow"
        Action   = local.ddb_write_actions
        Resource = [aws_dynamodb_table.main.arn]
      }] : [],
      cfg.usage_write ? [{
        # Usage counters and their audit entries: PutItem on link and audit items only.
        Sid      = "LinkUsageWrite"
        Effect   = "Allow"
        Action   = ["dynamodb:PutItem"]
        Resource = [aws_dynamodb_table.main.arn]
        Condition = {
          "ForAllValues:StringLike" = { "dynamodb:LeadingKeys" = ["DS#*", "AUDIT#*"] }
        }
      }] : [],
      cfg.s3_write ? [{
        # Version bodies and volume buckets; DeleteObject removes the buckets of a save that
        # lost its race.
        Sid      = "AnnotationBodiesWrite"
        Effect   = "Allow"
        Action   = ["s3:PutObject", "s3:DeleteObject"]
        Resource = ["${aws_s3_bucket.data.arn}/${var.annotations_prefix}*"]
      }] : [],
      cfg.ses_send ? [{
        Sid       = "SendMail"
        Effect    = "Allow"
        Action    = ["ses:SendEmail", "ses:SendRawEmail"]
        Resource  = [aws_ses_email_identity.sender.arn]
        Condition = { StringEquals = { "ses:FromAddress" = var.sender_email } }
      }] : [],
    )
  }
}

resource "aws_iam_role_policy" "fn" {
  for_each = local.functions

  name = "${local.function_names[each.key]}-least-privilege"
  role = aws_iam_role.fn[each.key].id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = local.function_policy_statements[each.key]
  })
}
