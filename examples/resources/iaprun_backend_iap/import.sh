# An import claims no invoker grant (invoker_grants is empty): destroying the imported resource
# leaves the IAP service agent's roles/run.invoker grant, as for any grant that existed before.
terraform import iaprun_backend_iap.web projects/my-project/global/backendServices/web-backend
terraform import iaprun_backend_iap.regional projects/my-project/regions/europe-west1/backendServices/eu-backend
terraform import iaprun_backend_iap.web my-project/web-backend
terraform import iaprun_backend_iap.web web-backend
