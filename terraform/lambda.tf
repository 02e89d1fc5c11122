# One Lambda per crate under functions/, built by
#   infra/scripts/package-lambdas.sh   (cargo lambda build --release --output-format zip -> target/lambda/<name>/bootstrap.zip)

resource "aws_cloudwatch_log_group" "fn" {
  for_each = local.functions

  name              = "/aws/lambda/${local.function_names[each.key]}"
  retention_in_days = var.log_retention_days
}

resource "aws_lambda_function" "fn" {
  for_each = local.functions

  function_name = local.function_names[each.key]
  description   = each.value.description
  role          = aws_iam_role.fn[each.key].arn

  runtime       = "provided.al2023"
  architectures = [var.lambda_architecture]
  handler       = "bootstrap"
  filename      = "${local.artifacts_dir}/${each.key}/bootstrap.zip"
  # Guarded so that validate/plan work before the zips are built (apply still needs them).
  source_code_hash = fileexists("${local.artifacts_dir}/${each.key}/bootstrap.zip") ? filebase64sha256("${local.artifacts_dir}/${each.key}/bootstrap.zip") : null

  memory_size = lookup(var.lambda_memory_mb, each.key, each.value.memory_mb)
  timeout     = lookup(var.lambda_timeout_s, each.key, each.value.timeout_s)

  environment {
    variables = merge(local.common_env, each.value.env, {
      ZARRSHARE_ADMIN_KEY = var.admin_key
    })
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.fn[each.key].name
  }

  # The log group and the permissions must exist before the first invocation.
  depends_on = [aws_iam_role_policy.fn, aws_cloudwatch_log_group.fn]
}
