"""google-cloud-service-usage (Service Usage API v1) against the emulator: services read, listed,
enabled and disabled through long-running operations."""

import unittest

from google.api_core import exceptions
from google.cloud import run_v2, service_usage_v1

from harness import PROJECT, REGION, client, main

ENABLED = service_usage_v1.State.ENABLED
DISABLED = service_usage_v1.State.DISABLED


class Services(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.usage = client(service_usage_v1.ServiceUsageClient)
        cls.parent = f"projects/{PROJECT}"

    def name(self, service):
        return f"{self.parent}/services/{service}"

    def test_get_and_list(self):
        run = self.usage.get_service(request={"name": self.name("run.googleapis.com")})
        self.assertEqual(run.state, ENABLED)
        self.assertTrue(run.name.endswith("/services/run.googleapis.com"), run.name)
        listed = self.usage.list_services(
            request=service_usage_v1.ListServicesRequest(parent=self.parent, filter="state:ENABLED")
        )
        names = [s.config.name for s in listed]
        self.assertIn("iap.googleapis.com", names)
        self.assertIn("run.googleapis.com", names)

    def test_disable_and_enable_through_operations(self):
        disabled = self.usage.disable_service(request={"name": self.name("run.googleapis.com")}).result(timeout=60)
        self.assertEqual(disabled.service.state, DISABLED)
        self.assertEqual(self.usage.get_service(request={"name": self.name("run.googleapis.com")}).state, DISABLED)
        # A disabled API answers 403 SERVICE_DISABLED, as Google does.
        with self.assertRaises(exceptions.Forbidden) as caught:
            client(run_v2.ServicesClient).get_service(name=f"{self.parent}/locations/{REGION}/services/x")
        self.assertEqual(caught.exception.reason, "SERVICE_DISABLED")
        enabled = self.usage.enable_service(request={"name": self.name("run.googleapis.com")}).result(timeout=60)
        self.assertEqual(enabled.service.state, ENABLED)

    def test_batch_enable_and_batch_get(self):
        services = ["iap.googleapis.com", "secretmanager.googleapis.com"]
        result = self.usage.batch_enable_services(
            request=service_usage_v1.BatchEnableServicesRequest(parent=self.parent, service_ids=services)
        ).result(timeout=60)
        self.assertEqual(sorted(s.config.name for s in result.services), services)
        got = self.usage.batch_get_services(
            request=service_usage_v1.BatchGetServicesRequest(
                parent=self.parent, names=[self.name(s) for s in services]
            )
        )
        self.assertEqual([s.state for s in got.services], [ENABLED, ENABLED])

    def test_unknown_service_is_refused(self):
        with self.assertRaises(exceptions.GoogleAPICallError) as caught:
            self.usage.enable_service(request={"name": self.name("not a service")}).result(timeout=60)
        self.assertIn(caught.exception.code, (400, 403))


if __name__ == "__main__":
    main()
