# Sender identity of invitation and share emails. AWS mails a verification link to the address;
# while the account is in the SES sandbox, recipients must be verified too.
resource "aws_ses_email_identity" "sender" {
  email = var.sender_email
}
