output "api_url" {
  description = "Base URL of the HTTP API ($default stage)."
  value       = aws_apigatewayv2_api.main.api_endpoint
}

output "public_base_url" {
  description = "Base URL the functions put in links (ZARRSHARE_PUBLIC_BASE_URL)."
  value       = coalesce(var.public_base_url, aws_apigatewayv2_api.main.api_endpoint)
}

output "table_name" {
  description = "DynamoDB table name."
  value       = aws_dynamodb_table.main.name
}

output "data_bucket_name" {
  description = "Data bucket (datasets and annotation bodies)."
  value       = aws_s3_bucket.data.id
}

output "function_names" {
  description = "Lambda function name per crate."
  value       = { for k, f in aws_lambda_function.fn : k => f.function_name }
}

output "function_role_arns" {
  description = "Execution role ARN per function."
  value       = { for k, r in aws_iam_role.fn : k => r.arn }
}

output "routes" {
  description = "HTTP API route key -> function."
  value       = { for k, r in local.routes : k => r.function }
}

output "ses_sender_identity_arn" {
  description = "SES identity of the sender address (verify it from the email AWS sends)."
  value       = aws_ses_email_identity.sender.arn
}
