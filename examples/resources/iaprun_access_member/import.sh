# "RESOURCE ROLE MEMBER", or "RESOURCE ROLE MEMBER CONDITION_TITLE" for a conditional member.
terraform import iaprun_access_member.alice "projects/my-project/iap_web/cloud_run-us-central1/services/hello roles/iap.httpsResourceAccessor user:alice@example.com"
terraform import iaprun_access_member.contractor "projects/my-project/iap_web/compute/services/web-backend roles/iap.httpsResourceAccessor user:contractor@example.com until-2027"
