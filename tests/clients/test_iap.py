"""google-cloud-iap (IAP API v1) against the emulator: IAM policies of IAP resources with etags,
IAP settings read and updated with a field mask, and the errors Google answers."""

import unittest

from google.api_core import exceptions
from google.cloud import iap_v1, resourcemanager_v3, run_v2
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import field_mask_pb2

from harness import PROJECT, REGION, client, main, status_of

ACCESSOR = "roles/iap.httpsResourceAccessor"


class IapResources(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.admin = client(iap_v1.IdentityAwareProxyAdminServiceClient)
        services = client(run_v2.ServicesClient)
        service = run_v2.Service(
            template=run_v2.RevisionTemplate(containers=[run_v2.Container(image="us-docker.pkg.dev/cloudrun/container/hello")])
        )
        services.create_service(
            parent=f"projects/{PROJECT}/locations/{REGION}", service=service, service_id="protected"
        ).result(timeout=60)
        # IAP names resources by project number, which Resource Manager tells.
        project = client(resourcemanager_v3.ProjectsClient).get_project(name=f"projects/{PROJECT}")
        cls.number = project.name.split("/")[1]
        cls.resource = f"projects/{cls.number}/iap_web/cloud_run-{REGION}/services/protected"

    def test_policy_read_modify_write_with_etags(self):
        get = iam_policy_pb2.GetIamPolicyRequest(resource=self.resource)
        policy = self.admin.get_iam_policy(request=get)
        self.assertEqual(list(policy.bindings), [])
        policy.bindings.append(policy_pb2.Binding(role=ACCESSOR, members=["group:eng@example.com"]))
        written = self.admin.set_iam_policy(
            request=iam_policy_pb2.SetIamPolicyRequest(resource=self.resource, policy=policy)
        )
        self.assertEqual([list(b.members) for b in written.bindings], [["group:eng@example.com"]])
        # The id-named resource is the same resource.
        by_id = self.admin.get_iam_policy(
            request=iam_policy_pb2.GetIamPolicyRequest(resource=self.resource.replace(self.number, PROJECT))
        )
        self.assertEqual(by_id.etag, written.etag)
        # Writing the policy read before that write: its etag is stale.
        with self.assertRaises(exceptions.Conflict) as caught:
            self.admin.set_iam_policy(
                request=iam_policy_pb2.SetIamPolicyRequest(resource=self.resource, policy=policy)
            )
        self.assertEqual(status_of(caught.exception), "ABORTED")
        allowed = self.admin.test_iam_permissions(
            request=iam_policy_pb2.TestIamPermissionsRequest(
                resource=self.resource, permissions=["iap.webServiceVersions.accessViaIAP"]
            )
        )
        self.assertEqual(list(allowed.permissions), ["iap.webServiceVersions.accessViaIAP"])

    def test_settings_get_and_update_with_mask(self):
        settings = self.admin.get_iap_settings(request=iap_v1.GetIapSettingsRequest(name=self.resource))
        self.assertEqual(settings.name, self.resource)
        update = iap_v1.IapSettings(
            name=self.resource,
            access_settings=iap_v1.AccessSettings(
                cors_settings=iap_v1.CorsSettings(allow_http_options=True),
                identity_sources=[iap_v1.AccessSettings.IdentitySource.WORKFORCE_IDENTITY_FEDERATION],
            ),
            application_settings=iap_v1.ApplicationSettings(cookie_domain="example.com"),
        )
        mask = field_mask_pb2.FieldMask(paths=["access_settings.cors_settings", "access_settings.identity_sources"])
        updated = self.admin.update_iap_settings(
            request=iap_v1.UpdateIapSettingsRequest(iap_settings=update, update_mask=mask)
        )
        self.assertTrue(updated.access_settings.cors_settings.allow_http_options)
        # A sparse enum (numbered 3, second in the list) survives the numeric encoding both ways.
        self.assertEqual(
            list(updated.access_settings.identity_sources),
            [iap_v1.AccessSettings.IdentitySource.WORKFORCE_IDENTITY_FEDERATION],
        )
        # Outside the mask: not written.
        self.assertFalse(updated.application_settings.cookie_domain)
        again = self.admin.get_iap_settings(request=iap_v1.GetIapSettingsRequest(name=self.resource))
        self.assertTrue(again.access_settings.cors_settings.allow_http_options)

    def test_missing_service_is_not_found(self):
        missing = f"projects/{self.number}/iap_web/cloud_run-{REGION}/services/nobody"
        with self.assertRaises(exceptions.NotFound):
            self.admin.get_iam_policy(request=iam_policy_pb2.GetIamPolicyRequest(resource=missing))
        with self.assertRaises(exceptions.NotFound):
            self.admin.get_iap_settings(request=iap_v1.GetIapSettingsRequest(name=missing))

    def test_malformed_resource_is_invalid_argument(self):
        with self.assertRaises(exceptions.BadRequest) as caught:
            self.admin.get_iam_policy(
                request=iam_policy_pb2.GetIamPolicyRequest(resource=f"projects/{PROJECT}/iap_web/appengine-x/services/y")
            )
        self.assertEqual(status_of(caught.exception), "INVALID_ARGUMENT")


if __name__ == "__main__":
    main()
