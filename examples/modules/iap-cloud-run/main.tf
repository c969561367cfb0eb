# A reusable module: puts IAP in front of one Cloud Run service and grants access to a list of members.
# mode = "direct"  -> IAP on the Cloud Run service itself (iaprun_service_iap)
# mode = "backend" -> IAP on the load balancer backend service that fronts it (iaprun_backend_iap)
terraform {
  required_providers {
    iaprun = {
      source = "iaprun/iaprun"
    }
  }
}

variable "service" {
  description = "Cloud Run service name (direct mode), or backend service name (backend mode)."
  type        = string
}

variable "mode" {
  description = "\"direct\" or \"backend\"."
  type        = string
  default     = "direct"
  validation {
    condition     = contains(["direct", "backend"], var.mode)
    error_message = "The mode must be \"direct\" or \"backend\"."
  }
}

variable "members" {
  description = "Principals allowed through IAP (user:, group:, domain:, serviceAccount:, principal://...)."
  type        = set(string)
}

variable "location" {
  description = "Region of the Cloud Run service (direct mode) or of a regional backend service (backend mode); null for the provider's region (direct) or a global backend service."
  type        = string
  default     = null
}

variable "project" {
  description = "Project id; null for the provider's project."
  type        = string
  default     = null
}

resource "iaprun_service_iap" "this" {
  count    = var.mode == "direct" ? 1 : 0
  service  = var.service
  location = var.location
  project  = var.project
}

resource "iaprun_backend_iap" "this" {
  count           = var.mode == "backend" ? 1 : 0
  backend_service = var.service
  region          = var.location
  project         = var.project
}

locals {
  iap_resource_name = var.mode == "direct" ? iaprun_service_iap.this[0].iap_resource_name : iaprun_backend_iap.this[0].iap_resource_name
}

resource "iaprun_access_binding" "users" {
  resource = local.iap_resource_name
  members  = var.members
}

output "iap_resource_name" {
  description = "The IAP resource name, for further iaprun_access_binding resources."
  value       = local.iap_resource_name
}

output "access_binding_id" {
  description = "Id of the access binding the module manages."
  value       = iaprun_access_binding.users.id
}
