"""What every client-library test shares: clients pointed at the emulator over REST.

The Rust driver (tests/client_libraries.rs) starts an emulator, puts the pinned libraries on
PYTHONPATH and sets IAPRUN_EMULATOR_URL and CLIENT_TEST_PROJECT.
"""

import os
import unittest

from google.api_core.client_options import ClientOptions
from google.oauth2.credentials import Credentials

ENDPOINT = os.environ["IAPRUN_EMULATOR_URL"]
PROJECT = os.environ["CLIENT_TEST_PROJECT"]
REGION = "us-central1"


def client(cls):
    """A client of `cls` talking REST to the emulator with a fake bearer token."""
    made = cls(
        credentials=Credentials(token="client-library-test"),
        transport="rest",
        client_options=ClientOptions(api_endpoint=ENDPOINT),
    )
    transport = type(made._transport).__name__
    assert transport.endswith("RestTransport"), f"{cls.__name__} uses {transport}, not REST"
    operations = getattr(made._transport, "_extended_operations_services", None)
    if operations is not None:
        # google-cloud-compute polls operations with clients of its own that ignore client_options
        # (they always call compute.googleapis.com): hand it clients pointed at the emulator.
        from google.cloud import compute_v1

        operations["global_operations"] = client(compute_v1.GlobalOperationsClient)
        operations["region_operations"] = client(compute_v1.RegionOperationsClient)
    return made


def status_of(error):
    """The google.rpc status name in an API error's JSON body (e.g. ABORTED)."""
    return error.response.json()["error"].get("status")


def main():
    unittest.main(verbosity=2)
