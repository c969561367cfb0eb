terraform import iaprun_backend_iap.web projects/my-project/global/backendServices/web-backend
terraform import iaprun_backend_iap.regional projects/my-project/regions/europe-west1/backendServices/eu-backend
terraform import iaprun_backend_iap.web my-project/web-backend
terraform import iaprun_backend_iap.web web-backend
