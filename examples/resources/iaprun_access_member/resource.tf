# Two teams, each in its own module or configuration, let their people through the same IAP
# resource; neither removes the other's members, nor members added outside Terraform.
resource "iaprun_access_member" "alice" {
  resource = "projects/my-project/iap_web/cloud_run-us-central1/services/hello"
  member   = "user:alice@example.com"
}

resource "iaprun_access_member" "support" {
  resource = "projects/my-project/iap_web/cloud_run-us-central1/services/hello"
  member   = "group:support@example.com"
}

# A contractor until the end of the contract (IAM condition, policy version 3).
resource "iaprun_access_member" "contractor" {
  resource = "projects/my-project/iap_web/compute/services/web-backend"
  role     = "roles/iap.httpsResourceAccessor"
  member   = "user:contractor@example.com"

  condition {
    title       = "until-2027"
    description = "Contract ends in 2027"
    expression  = "request.time < timestamp(\"2027-01-01T00:00:00Z\")"
  }
}
