# A reusable module: puts IAP in front of one Cloud Run service and lets a list of members through.
#   mode = "direct"  -> IAP on the Cloud Run service itself (iaprun_service_iap); set `service`.
#   mode = "backend" -> IAP on the load balancer backend service that fronts Cloud Run through
#                       serverless NEGs (iaprun_backend_iap); set `backend_service`.
# Either way the IAP service agent gets roles/run.invoker on the Cloud Run service(s) and the members
# get roles/iap.httpsResourceAccessor on the IAP resource, one iaprun_access_member each, so other
# modules (see ../iap-access) can let their own people through the same IAP resource without
# removing these. Works with Terraform 1.0 and later.
terraform {
  required_version = ">= 1.0"
  required_providers {
    iaprun = {
      source = "iaprun/iaprun"
    }
  }
}

variable "mode" {
  description = "Where IAP goes: \"direct\" (on the Cloud Run service) or \"backend\" (on the load balancer backend service)."
  type        = string
  default     = "direct"
  validation {
    condition     = contains(["direct", "backend"], var.mode)
    error_message = "The mode must be \"direct\" or \"backend\"."
  }
}

variable "service" {
  description = "Name of the Cloud Run service (direct mode)."
  type        = string
  default     = null
}

variable "backend_service" {
  description = "Name of the backend service in front of the Cloud Run service (backend mode)."
  type        = string
  default     = null
}

variable "members" {
  description = "Principals allowed through IAP (user:, group:, domain:, serviceAccount:, principal://...)."
  type        = set(string)
}

variable "location" {
  description = "Region of the Cloud Run service (direct mode) or of a regional backend service (backend mode); null for the provider's region (direct) or a global backend service (backend)."
  type        = string
  default     = null
}

variable "project" {
  description = "Project id; null for the provider's project."
  type        = string
  default     = null
}

variable "ignore_checks" {
  description = "Plan-time checks to turn off for the IAP resource (see docs/checks.md), once you have verified the finding."
  type        = set(string)
  default     = []
}

resource "iaprun_service_iap" "this" {
  count         = var.mode == "direct" ? 1 : 0
  service       = var.service
  location      = var.location
  project       = var.project
  ignore_checks = var.ignore_checks
}

resource "iaprun_backend_iap" "this" {
  count           = var.mode == "backend" ? 1 : 0
  backend_service = var.backend_service
  region          = var.location
  project         = var.project
  ignore_checks   = var.ignore_checks
}

locals {
  direct = var.mode == "direct"
  # Exactly one of the two resources exists.
  iap_resource_name = local.direct ? one(iaprun_service_iap.this[*].iap_resource_name) : one(iaprun_backend_iap.this[*].iap_resource_name)
  iap_id            = local.direct ? one(iaprun_service_iap.this[*].id) : one(iaprun_backend_iap.this[*].id)
  cloud_run_services = concat(
    [for s in iaprun_service_iap.this : "${s.location}/${s.service}"],
    flatten(iaprun_backend_iap.this[*].cloud_run_services),
  )
}

resource "iaprun_access_member" "users" {
  for_each = var.members
  resource = local.iap_resource_name
  member   = each.value
}

output "iap_resource_name" {
  description = "The IAP resource name, for further iaprun_access_member resources (or the iap-access module)."
  value       = local.iap_resource_name
}

output "iap_id" {
  description = "Id of the IAP resource: the Cloud Run service (direct) or the backend service (backend)."
  value       = local.iap_id
}

output "cloud_run_services" {
  description = "The Cloud Run services IAP protects, as location/name."
  value       = local.cloud_run_services
}

output "access_member_ids" {
  description = "Ids of the access members the module manages, by member."
  value       = { for m, r in iaprun_access_member.users : m => r.id }
}

output "jwt_audience" {
  description = "The audience the application must verify in the X-Goog-IAP-JWT-Assertion header."
  value       = local.direct ? one(iaprun_service_iap.this[*].jwt_audience) : one(iaprun_backend_iap.this[*].jwt_audience)
}
