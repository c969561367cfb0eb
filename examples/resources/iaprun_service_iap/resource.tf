# IAP directly on a Cloud Run service: provisions the IAP service agent,
# grants it roles/run.invoker on the service and turns IAP on.
resource "iaprun_service_iap" "hello" {
  service  = "hello"
  location = "us-central1"
}

# Who may pass IAP.
resource "iaprun_access_binding" "hello_users" {
  resource = iaprun_service_iap.hello.iap_resource_name
  members  = ["group:engineering@example.com"]
}
