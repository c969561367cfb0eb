# "RESOURCE ROLE", or "RESOURCE ROLE CONDITION_TITLE" for a conditional binding.
terraform import iaprun_access_binding.engineering "projects/my-project/iap_web/cloud_run-us-central1/services/hello roles/iap.httpsResourceAccessor"
terraform import iaprun_access_binding.contractors "projects/my-project/iap_web/compute/services/web-backend roles/iap.httpsResourceAccessor until-2027"
