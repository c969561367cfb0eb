# The IAP resource name (project id or number). Import takes over every setting the resource has:
# the configuration should name them all, or the next apply clears those it leaves out.
terraform import iaprun_iap_settings.hello projects/my-project/iap_web/cloud_run-us-central1/services/hello
