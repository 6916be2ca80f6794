# A ClusterIP service in front of the pods labelled app = "web", written
# through any member of the cluster.
resource "herd_service" "web" {
  node      = herd_node.node1.id
  namespace = "default"
  name      = "web"
  selector = {
    app = "web"
  }

  port {
    name             = "http"
    port             = 80
    target_port_name = "http" # the pods' container port named "http"
  }

  port {
    name        = "metrics"
    port        = 9090
    target_port = 9091
  }
}

# The same pods on a port of every node's address; agentd allocates the
# node port and keeps it while the service stays a NodePort service.
resource "herd_service" "web_public" {
  node             = herd_node.node1.id
  name             = "web-public"
  type             = "NodePort"
  session_affinity = "ClientIP"
  selector = {
    app = "web"
  }

  port {
    port        = 80
    target_port = 8080
  }
}
