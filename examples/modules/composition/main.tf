# Composes the iap-cloud-run module twice, next to each other, with a binding of our own on top of one
# of them: module outputs feed resources, and two instances of one module do not collide.
terraform {
  required_providers {
    iaprun = {
      source = "iaprun/iaprun"
    }
  }
}

provider "iaprun" {
  project = var.project
  region  = "us-central1"
}

variable "project" {
  type    = string
  default = "quickstart-project"
}

module "frontend" {
  source  = "../iap-cloud-run"
  service = "frontend"
  members = ["group:engineering@example.com"]
}

module "admin" {
  source  = "../iap-cloud-run"
  service = "admin"
  members = ["group:admins@example.com"]
}

# Auditors get read access through IAP to the admin app only, with a time-limited condition.
resource "iaprun_access_binding" "auditors" {
  resource = module.admin.iap_resource_name
  members  = ["user:auditor@example.com"]
  condition {
    title      = "audit-2027"
    expression = "request.time < timestamp(\"2028-01-01T00:00:00Z\")"
  }
}

output "iap_resources" {
  value = [module.frontend.iap_resource_name, module.admin.iap_resource_name]
}
