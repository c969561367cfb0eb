# A custom OAuth client (write-only secret, Terraform 1.11+), sign-in limited to one domain, CORS
# preflights let through and re-authentication every 12 hours. Only these fields are managed:
# settings made elsewhere stay as they are, and destroy clears only these.
variable "oauth_client_secret" {
  type      = string
  sensitive = true
}

resource "iaprun_iap_settings" "hello" {
  resource = "projects/my-project/iap_web/cloud_run-us-central1/services/hello"

  access_settings {
    oauth_settings {
      client_id                = "1234567890-abcdef.apps.googleusercontent.com"
      client_secret_wo         = var.oauth_client_secret
      client_secret_wo_version = 1
      # CI jobs with their own OAuth client may call the service programmatically.
      programmatic_clients = ["1234567890-ci.apps.googleusercontent.com"]
    }
    cors_settings {
      allow_http_options = true
    }
    allowed_domains_settings {
      enable  = true
      domains = ["example.com"]
    }
    reauth_settings {
      method      = "LOGIN"
      max_age     = "43200s"
      policy_type = "MINIMUM"
    }
  }

  application_settings {
    access_denied_page_settings {
      access_denied_page_uri = "https://example.com/access-denied"
    }
  }
}
