# Write-only data (Terraform or OpenTofu 1.11 and later): the values never
# reach a plan or the state. Change data_wo_version to push new values.
variable "db_password" {
  type      = string
  sensitive = true
  ephemeral = true
}

resource "herd_secret" "db" {
  node = herd_node.node1.id
  name = "db"
  data_wo = {
    username = "app"
    password = var.db_password
  }
  data_wo_version = 3

  # Only nodes labelled tier = "db" ever receive it.
  node_selector = {
    tier = "db"
  }
}

# Registry credentials, used by pods through image_pull_secret.
resource "herd_secret" "registry" {
  node      = herd_node.node1.id
  namespace = "infra"
  name      = "registry"
  type      = "registry"
  data_wo = {
    registry = "registry.example.com"
    username = "puller"
    password = var.registry_token
  }
  data_wo_version = 1
}

# A TLS key pair that never changes: new data replaces the secret.
resource "herd_secret" "web_tls" {
  node      = herd_node.node1.id
  name      = "web-tls"
  type      = "tls"
  immutable = true
  data_wo = {
    "tls.crt" = file("certs/web.pem")
    "tls.key" = file("certs/web-key.pem")
  }
  data_wo_version = 1
}

# For CLIs older than 1.11 only: data is kept in the state (marked
# sensitive). Protect the state like the secret itself.
resource "herd_secret" "legacy" {
  node = herd_node.node1.id
  name = "legacy"
  data = {
    token = var.legacy_token
  }
}

# A pod that reads the password from a file, pulls its image with the
# registry secret and is restarted when the secret's data changes. The
# plan of a herd_secret change lists such pods in `restarts`.
resource "herd_pod" "api" {
  node                     = herd_node.node1.id
  name                     = "api"
  image_pull_secret        = herd_secret.registry.id # "infra/registry"
  restart_on_secret_change = true

  container {
    name  = "app"
    image = "registry.example.com/api:2.0"

    # /run/secrets/db/username and /run/secrets/db/password, mode 0400,
    # on a tmpfs.
    secret_mount {
      secret = herd_secret.db.name
    }

    secret_mount {
      secret = herd_secret.web_tls.name
      path   = "/etc/api/tls"
      uid    = 1000
      mode   = "0440"
      keys   = ["tls.crt", "tls.key"]
    }

    # Weaker than a file: visible in /proc/<pid>/environ, and only
    # updated when the container restarts.
    secret_env {
      name   = "DB_USER"
      secret = herd_secret.db.name
      key    = "username"
    }
  }
}
