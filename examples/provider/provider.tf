terraform {
  required_providers {
    iaprun = {
      source = "iaprun/iaprun"
    }
  }
}

provider "iaprun" {
  project = "my-project"
  region  = "us-central1"
  # credentials, access_token and the *_custom_endpoint settings are optional;
  # without them the provider uses application default credentials.
}
