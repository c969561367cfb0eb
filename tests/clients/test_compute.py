"""google-cloud-compute (Compute Engine API v1) against the emulator: a serverless load balancer
inserted, read, listed and patched through operations, fingerprints, and the errors Google answers."""

import unittest

from google.api_core import exceptions
from google.cloud import compute_v1, run_v2

from harness import PROJECT, REGION, client, main


class LoadBalancer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        client(run_v2.ServicesClient).create_service(
            parent=f"projects/{PROJECT}/locations/{REGION}",
            service=run_v2.Service(
                ingress=run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER,
                template=run_v2.RevisionTemplate(containers=[run_v2.Container(image="us-docker.pkg.dev/cloudrun/container/hello")]),
            ),
            service_id="behind-lb",
        ).result(timeout=60)
        negs = client(compute_v1.RegionNetworkEndpointGroupsClient)
        negs.insert(
            project=PROJECT,
            region=REGION,
            network_endpoint_group_resource=compute_v1.NetworkEndpointGroup(
                name="lb-neg",
                network_endpoint_type="SERVERLESS",
                cloud_run=compute_v1.NetworkEndpointGroupCloudRun(service="behind-lb"),
            ),
        ).result(timeout=60)
        cls.backends = client(compute_v1.BackendServicesClient)
        cls.backends.insert(
            project=PROJECT,
            backend_service_resource=compute_v1.BackendService(
                name="lb-backend",
                load_balancing_scheme="EXTERNAL_MANAGED",
                protocol="HTTPS",
                backends=[compute_v1.Backend(group=f"projects/{PROJECT}/regions/{REGION}/networkEndpointGroups/lb-neg")],
            ),
        ).result(timeout=60)

    def test_frontend_chain(self):
        client(compute_v1.UrlMapsClient).insert(
            project=PROJECT,
            url_map_resource=compute_v1.UrlMap(name="lb-map", default_service=f"global/backendServices/lb-backend"),
        ).result(timeout=60)
        client(compute_v1.TargetHttpProxiesClient).insert(
            project=PROJECT,
            target_http_proxy_resource=compute_v1.TargetHttpProxy(name="lb-proxy", url_map="global/urlMaps/lb-map"),
        ).result(timeout=60)
        rules = client(compute_v1.GlobalForwardingRulesClient)
        rules.insert(
            project=PROJECT,
            forwarding_rule_resource=compute_v1.ForwardingRule(
                name="lb-http",
                load_balancing_scheme="EXTERNAL_MANAGED",
                port_range="80",
                target="global/targetHttpProxies/lb-proxy",
            ),
        ).result(timeout=60)
        rule = rules.get(project=PROJECT, forwarding_rule="lb-http")
        self.assertTrue(rule.target.endswith("/global/targetHttpProxies/lb-proxy"), rule.target)
        names = [r.name for r in rules.list(project=PROJECT)]
        self.assertEqual(names, ["lb-http"])
        # The proxy is in use by the rule: Google refuses to delete it.
        with self.assertRaises(exceptions.BadRequest):
            client(compute_v1.TargetHttpProxiesClient).delete(project=PROJECT, target_http_proxy="lb-proxy").result(timeout=60)
        rules.delete(project=PROJECT, forwarding_rule="lb-http").result(timeout=60)
        with self.assertRaises(exceptions.NotFound):
            rules.get(project=PROJECT, forwarding_rule="lb-http")

    def test_get_list_and_patch_with_fingerprint(self):
        backend = self.backends.get(project=PROJECT, backend_service="lb-backend")
        self.assertEqual(backend.load_balancing_scheme, "EXTERNAL_MANAGED")
        self.assertTrue(backend.backends[0].group.endswith("/networkEndpointGroups/lb-neg"))
        self.assertTrue(backend.fingerprint)
        self.assertIn("lb-backend", [b.name for b in self.backends.list(project=PROJECT)])

        operation = self.backends.patch(
            project=PROJECT,
            backend_service="lb-backend",
            backend_service_resource=compute_v1.BackendService(
                fingerprint=backend.fingerprint, iap=compute_v1.BackendServiceIAP(enabled=True)
            ),
        )
        operation.result(timeout=60)
        self.assertEqual(operation.status, compute_v1.Operation.Status.DONE)
        patched = self.backends.get(project=PROJECT, backend_service="lb-backend")
        self.assertTrue(patched.iap.enabled)
        self.assertNotEqual(patched.fingerprint, backend.fingerprint)

        # The fingerprint read before the patch is stale now: 412, nothing changed.
        with self.assertRaises(exceptions.PreconditionFailed):
            self.backends.patch(
                project=PROJECT,
                backend_service="lb-backend",
                backend_service_resource=compute_v1.BackendService(
                    fingerprint=backend.fingerprint, iap=compute_v1.BackendServiceIAP(enabled=False)
                ),
            )
        self.assertTrue(self.backends.get(project=PROJECT, backend_service="lb-backend").iap.enabled)

    def test_missing_backend_is_not_found(self):
        with self.assertRaises(exceptions.NotFound):
            self.backends.get(project=PROJECT, backend_service="nobody")

    def test_duplicate_insert_fails_as_conflict(self):
        with self.assertRaises(exceptions.Conflict):
            self.backends.insert(
                project=PROJECT,
                backend_service_resource=compute_v1.BackendService(name="lb-backend", load_balancing_scheme="EXTERNAL_MANAGED"),
            ).result(timeout=60)


if __name__ == "__main__":
    main()
