"""google-cloud-run (Cloud Run Admin API v2) against the emulator: services with long-running
operations, IAM with etags, and the errors Google answers."""

import unittest

from google.api_core import exceptions
from google.cloud import run_v2
from google.iam.v1 import iam_policy_pb2, policy_pb2

from harness import PROJECT, REGION, client, main, status_of

PARENT = f"projects/{PROJECT}/locations/{REGION}"


def hello(ingress=run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER):
    return run_v2.Service(
        ingress=ingress,
        template=run_v2.RevisionTemplate(
            containers=[
                run_v2.Container(
                    image="us-docker.pkg.dev/cloudrun/container/hello",
                    ports=[run_v2.ContainerPort(name="h2c", container_port=8080)],
                )
            ]
        ),
        labels={"team": "web"},
    )


class Services(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.services = client(run_v2.ServicesClient)

    def create(self, name, **kwargs):
        operation = self.services.create_service(parent=PARENT, service=hello(**kwargs), service_id=name)
        return operation.result(timeout=60)

    def test_create_get_list_update_delete(self):
        created = self.create("lifecycle")
        name = f"{PARENT}/services/lifecycle"
        self.assertEqual(created.name, name)
        self.assertEqual(created.ingress, run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER)
        self.assertEqual(created.template.containers[0].ports[0].container_port, 8080)
        self.assertEqual(created.terminal_condition.state, run_v2.Condition.State.CONDITION_SUCCEEDED)
        self.assertTrue(created.uri.startswith("https://"), created.uri)
        self.assertTrue(created.etag)

        got = self.services.get_service(name=name)
        self.assertEqual(got.uid, created.uid)
        self.assertEqual(dict(got.labels), {"team": "web"})
        self.assertFalse(got.iap_enabled)

        names = [s.name for s in self.services.list_services(parent=PARENT)]
        self.assertIn(name, names)

        got.iap_enabled = True
        got.ingress = run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL
        updated = self.services.update_service(service=got).result(timeout=60)
        self.assertTrue(updated.iap_enabled)
        self.assertEqual(updated.ingress, run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL)
        self.assertGreater(updated.generation, created.generation)
        self.assertTrue(self.services.get_service(name=name).iap_enabled)

        deleted = self.services.delete_service(name=name).result(timeout=60)
        self.assertEqual(deleted.name, name)
        with self.assertRaises(exceptions.NotFound):
            self.services.get_service(name=name)

    def test_missing_service_is_not_found(self):
        with self.assertRaises(exceptions.NotFound) as caught:
            self.services.get_service(name=f"{PARENT}/services/nobody")
        self.assertEqual(status_of(caught.exception), "NOT_FOUND")

    def test_second_create_already_exists(self):
        self.create("twice")
        with self.assertRaises(exceptions.Conflict) as caught:
            self.services.create_service(parent=PARENT, service=hello(), service_id="twice")
        self.assertEqual(status_of(caught.exception), "ALREADY_EXISTS")

    def test_update_with_stale_etag_is_aborted(self):
        first = self.create("etagged")
        first.labels["team"] = "ops"
        self.services.update_service(service=first).result(timeout=60)
        first.labels["team"] = "late"
        with self.assertRaises(exceptions.Conflict) as caught:
            self.services.update_service(service=first)
        self.assertEqual(status_of(caught.exception), "ABORTED")

    def test_iam_policy_with_etags(self):
        self.create("guarded")
        resource = f"{PARENT}/services/guarded"
        policy = self.services.get_iam_policy(request=iam_policy_pb2.GetIamPolicyRequest(resource=resource))
        policy.bindings.append(policy_pb2.Binding(role="roles/run.invoker", members=["user:alice@example.com"]))
        written = self.services.set_iam_policy(
            request=iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=policy)
        )
        self.assertNotEqual(written.etag, policy.etag)
        read = self.services.get_iam_policy(request=iam_policy_pb2.GetIamPolicyRequest(resource=resource))
        self.assertEqual(
            [(b.role, list(b.members)) for b in read.bindings],
            [("roles/run.invoker", ["user:alice@example.com"])],
        )
        # The policy read before the write carries a stale etag now.
        policy.bindings[0].members.append("user:mallory@example.com")
        with self.assertRaises(exceptions.Conflict) as caught:
            self.services.set_iam_policy(request=iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=policy))
        self.assertEqual(status_of(caught.exception), "ABORTED")
        allowed = self.services.test_iam_permissions(
            request=iam_policy_pb2.TestIamPermissionsRequest(resource=resource, permissions=["run.services.get"])
        )
        self.assertEqual(list(allowed.permissions), ["run.services.get"])


class Operations(unittest.TestCase):
    def test_operations_are_listed_and_read(self):
        services = client(run_v2.ServicesClient)
        operation = services.create_service(parent=PARENT, service=hello(), service_id="watched")
        operation.result(timeout=60)
        got = services.get_operation({"name": operation.operation.name})
        self.assertTrue(got.done)
        listed = [o.name for o in services.list_operations({"name": PARENT}).operations]
        self.assertIn(operation.operation.name, listed)


if __name__ == "__main__":
    main()
