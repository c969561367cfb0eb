# A reusable module: lets a list of members through an IAP resource that another module (or
# configuration) owns, one iaprun_access_member each. Several instances, and members granted outside
# Terraform, share one IAP resource: each instance adds and removes only its own members.
terraform {
  required_version = ">= 1.0"
  required_providers {
    iaprun = {
      source = "iaprun/iaprun"
    }
  }
}

variable "resource" {
  description = "The IAP resource name, such as module.app.iap_resource_name."
  type        = string
}

variable "members" {
  description = "Principals allowed through IAP (user:, group:, domain:, serviceAccount:, principal://...)."
  type        = set(string)
}

variable "role" {
  description = "The role to grant."
  type        = string
  default     = "roles/iap.httpsResourceAccessor"
}

resource "iaprun_access_member" "this" {
  for_each = var.members
  resource = var.resource
  role     = var.role
  member   = each.value
}

output "ids" {
  description = "Ids of the access members, by member."
  value       = { for m, r in iaprun_access_member.this : m => r.id }
}
