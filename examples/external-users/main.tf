# IAP directly on a Cloud Run service for users outside your organization (or a project without
# one): Google's managed OAuth client signs in only members of the organization, so the service gets
# a custom OAuth client in its IAP settings, and sign-in is limited to the partner domains.
#
# Create the OAuth client (type "Web application") in the Google Cloud console under APIs & Services >
# Credentials, with the redirect URI https://iap.googleapis.com/v1/oauth/clientIds/CLIENT_ID:handleRedirect,
# and pass its id and secret. The secret is write-only (Terraform 1.11+): it never enters plan or
# state; bump client_secret_version to send a new one. Applying needs roles/iap.settingsAdmin.
terraform {
  required_version = ">= 1.0" # the write-only secret needs 1.11+
  required_providers {
    iaprun = {
      source = "iaprun/iaprun"
    }
  }
}

variable "project" {
  description = "Project of the Cloud Run service."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run service."
  type        = string
  default     = "us-central1"
}

variable "service" {
  description = "Name of the Cloud Run service (created elsewhere, e.g. with google_cloud_run_v2_service)."
  type        = string
  default     = "partner-portal"
}

variable "oauth_client_id" {
  description = "Id of the custom OAuth client (NUMBER-ID.apps.googleusercontent.com)."
  type        = string
}

variable "oauth_client_secret" {
  description = "Secret of the custom OAuth client."
  type        = string
  sensitive   = true
}

variable "client_secret_version" {
  description = "Change it when the secret changes, to send the new one."
  type        = number
  default     = 1
}

provider "iaprun" {
  project = var.project
  region  = var.region
}

resource "iaprun_service_iap" "portal" {
  service = var.service
}

resource "iaprun_iap_settings" "portal" {
  resource = iaprun_service_iap.portal.iap_resource_name

  access_settings {
    oauth_settings {
      client_id                = var.oauth_client_id
      client_secret_wo         = var.oauth_client_secret
      client_secret_wo_version = var.client_secret_version
    }
    allowed_domains_settings {
      enable  = true
      domains = ["partner.example", "example.com"]
    }
  }
}

# Referring to the settings' resource plans the binding after them, so the plan-time check
# managed_oauth_external knows the custom client is coming and stays quiet.
resource "iaprun_access_binding" "partners" {
  resource = iaprun_iap_settings.portal.resource
  members = [
    "domain:partner.example",
    "user:alice@example.com",
  ]
}

output "iap_resource_name" {
  description = "The IAP resource whose settings and access this configuration manages."
  value       = iaprun_iap_settings.portal.resource
}
