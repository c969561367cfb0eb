# Audits every Cloud Run service of a project for IAP exposure, whoever deployed it: a `check` block
# turns each exposed service into a warning on every plan (and in Terraform Cloud's continuous
# validation), and an output prints one line per service. Needs Terraform 1.5+ (check blocks).
terraform {
  required_version = ">= 1.5"
  required_providers {
    iaprun = {
      source = "iaprun/iaprun"
    }
  }
}

variable "project" {
  description = "Project whose Cloud Run services are audited."
  type        = string
  default     = "my-project"
}

variable "regions" {
  description = "Regions whose Cloud Run services are audited."
  type        = list(string)
  default     = ["us-central1", "europe-west1"]
}

provider "iaprun" {
  project = var.project
  region  = var.regions[0]
}

data "iaprun_audit" "project" {
  regions = var.regions
}

locals {
  # Findings that leave a service reachable without IAP (the others break sign-in or warn).
  exposure_checks = ["no_iap", "unprotected_path", "run_app_bypass", "public_invoker", "public_member"]
  exposed = distinct([
    for f in data.iaprun_audit.project.findings : f.service if contains(local.exposure_checks, f.check)
  ])
}

check "no_exposed_service" {
  assert {
    condition     = length(local.exposed) == 0
    error_message = "Cloud Run services reachable without IAP: ${join(", ", local.exposed)}. See the audit output for the finding and its fix."
  }
}

output "audit" {
  description = "One line per Cloud Run service: where it is, its ingress, where IAP guards it, its findings."
  value = join("\n", concat(
    [format("%-40s %-22s %-14s %s", "SERVICE", "INGRESS", "IAP", "FINDINGS")],
    [for s in data.iaprun_audit.project.services : format(
      "%-40s %-22s %-14s %s",
      "${s.location}/${s.name}",
      trimprefix(s.ingress, "INGRESS_TRAFFIC_"),
      s.iap_enabled ? "service" : (anytrue([for b in s.backends : b.iap_enabled]) ? "load-balancer" : "none"),
      join(", ", [for f in s.findings : f.check]),
    )],
  ))
}

output "findings" {
  description = "Every finding: the service, the check, its severity, what was found and how to fix it."
  value       = data.iaprun_audit.project.findings
}
