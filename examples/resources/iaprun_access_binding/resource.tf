# Everyone in the engineering group may pass IAP in front of the service.
resource "iaprun_access_binding" "engineering" {
  resource = "projects/my-project/iap_web/cloud_run-us-central1/services/hello"
  members = [
    "group:engineering@example.com",
    "user:alice@example.com",
  ]
}

# Contractors only until the end of their contract (IAM condition, policy version 3).
resource "iaprun_access_binding" "contractors" {
  resource = "projects/my-project/iap_web/compute/services/web-backend"
  role     = "roles/iap.httpsResourceAccessor"
  members  = ["group:contractors@example.com"]

  condition {
    title       = "until-2027"
    description = "Contract ends in 2027"
    expression  = "request.time < timestamp(\"2027-01-01T00:00:00Z\")"
  }
}
