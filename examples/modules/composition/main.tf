# Composes the iap-cloud-run module twice, side by side: the "frontend" app with IAP directly on its
# Cloud Run service, the "admin" app with IAP on the load balancer backend service in front of it. The
# on-call team's module lets its people through the admin app too: both modules add members to the
# same role on the same IAP resource (iaprun_access_member), so neither removes the other's. A
# conditional binding of our own covers another (role, condition) pair; an iaprun_access_binding on
# the pair the modules share would be reported by the binding_conflict check at plan.
terraform {
  required_version = ">= 1.0"
  required_providers {
    iaprun = {
      source = "iaprun/iaprun"
    }
  }
}

variable "project" {
  description = "Project that holds both Cloud Run services and the load balancer."
  type        = string
  default     = "quickstart-project"
}

variable "region" {
  description = "Region of the Cloud Run services."
  type        = string
  default     = "us-central1"
}

provider "iaprun" {
  project = var.project
  region  = var.region
}

module "frontend" {
  source  = "../iap-cloud-run"
  mode    = "direct"
  service = "frontend"
  members = ["group:engineering@example.com"]
}

module "admin" {
  source          = "../iap-cloud-run"
  mode            = "backend"
  backend_service = "admin-backend" # global backend service over a serverless NEG for Cloud Run "admin"
  members         = ["group:admins@example.com"]
  # The Envoy-based load balancer (EXTERNAL_MANAGED): the JWT header warning is verified for this app.
  ignore_checks = ["envoy_jwt_header"]
}

module "admin_oncall" {
  source   = "../iap-access"
  resource = module.admin.iap_resource_name
  members  = ["group:oncall@example.com"]
}

# Auditors may pass IAP in front of the admin app only, until a fixed date (IAM condition).
resource "iaprun_access_binding" "auditors" {
  resource = module.admin.iap_resource_name
  members  = ["user:auditor@example.com"]
  condition {
    title      = "audit-2027"
    expression = "request.time < timestamp(\"2028-01-01T00:00:00Z\")"
  }
}

output "iap_resources" {
  description = "The IAP resource names of both apps."
  value = {
    frontend = module.frontend.iap_resource_name
    admin    = module.admin.iap_resource_name
  }
}

output "jwt_audiences" {
  description = "The audience each app must verify in the X-Goog-IAP-JWT-Assertion header."
  value = {
    frontend = module.frontend.jwt_audience
    admin    = module.admin.jwt_audience
  }
}

output "protected_services" {
  description = "The Cloud Run services behind IAP, as location/name."
  value       = concat(module.frontend.cloud_run_services, module.admin.cloud_run_services)
}
