# IAP on a global backend service that fronts Cloud Run through a serverless NEG,
# with the Google-managed OAuth client (members of your organization only).
resource "iaprun_backend_iap" "web" {
  backend_service = "web-backend"
}

# A regional backend service with a custom OAuth client. The write-only secret
# (Terraform 1.11+) never enters the plan or the state; bump its _version to send
# a new one. On older Terraform set oauth2_client_secret instead (stored in state).
variable "oauth_client_secret" {
  type      = string
  sensitive = true
}

resource "iaprun_backend_iap" "regional" {
  backend_service                 = "eu-backend"
  region                          = "europe-west1"
  oauth2_client_id                = "1234-abc.apps.googleusercontent.com"
  oauth2_client_secret_wo         = var.oauth_client_secret
  oauth2_client_secret_wo_version = 1
}
