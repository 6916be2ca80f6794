resource "herd_pod" "web" {
  node = herd_node.node1.id
  name = "web"
  labels = {
    app = "web"
  }
  restart_policy                   = "Always"
  termination_grace_period_seconds = 30

  container {
    name    = "app"
    image   = "registry.example.com/web:1.4"
    command = ["/bin/web"]
    args    = ["--listen", ":8080"]
    env = {
      LOG_LEVEL = "info"
    }
    working_dir = "/srv"
    cpu         = "500m"
    memory      = "256Mi"

    port {
      name           = "http"
      container_port = 8080
    }
  }

  timeouts {
    create = "5m"
    delete = "2m"
  }
}
