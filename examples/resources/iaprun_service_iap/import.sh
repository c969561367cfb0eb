# An import claims no invoker grant (invoker_grants is empty): destroying the imported resource
# leaves the IAP service agent's roles/run.invoker grant, as for any grant that existed before.
# Any of these id forms; the missing parts come from the provider's project and region.
terraform import iaprun_service_iap.hello projects/my-project/locations/us-central1/services/hello
terraform import iaprun_service_iap.hello my-project/us-central1/hello
terraform import iaprun_service_iap.hello us-central1/hello
terraform import iaprun_service_iap.hello hello
