# Three replicas of a web server, placed by herd on the cluster's nodes and
# rolled out one at a time: changing the template (the image, say) starts a
# new revision whose replicas must be ready before old ones are drained.
resource "herd_deployment" "web" {
  node     = herd_node.node1.id # any member: it writes, reads and dry-runs
  name     = "web"
  replicas = 3
  selector = {
    app = "web"
  }
  node_selector = {
    role = "web"
  }

  template {
    labels = {
      app = "web"
    }

    container {
      name           = "app"
      image          = "registry.example.com/web:1.4"
      cpu            = "500m"
      memory         = "256Mi"
      memory_request = "128Mi" # what the scheduler reserves; default: the limit

      port {
        name           = "http"
        container_port = 8080
      }

      readiness_probe {
        http_get {
          path      = "/ready"
          port_name = "http"
        }
        period_seconds = 1
      }
    }
  }

  placement = {
    strategy     = "spread" # default "bin_pack"
    max_per_node = 1
  }

  strategy = {
    type              = "RollingUpdate" # or "BlueGreen"
    max_surge         = 1
    max_unavailable   = 0
    min_ready_seconds = 5
  }

  timeouts {
    create = "15m"
    update = "15m"
  }
}

# The replicas behind one stable virtual IP.
resource "herd_service" "web" {
  node     = herd_node.node1.id
  name     = "web"
  selector = herd_deployment.web.selector

  port {
    port             = 80
    target_port_name = "http"
  }
}
