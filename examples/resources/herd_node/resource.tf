# Adopt a node whose agentd listens on 10.0.0.5:7443. Its certificate must
# carry the name "node-1" (herdctl certs node node-1 --ip 10.0.0.5).
resource "herd_node" "node1" {
  name    = "node-1"
  address = "10.0.0.5:7443"
  labels = {
    zone = "rack-a"
  }
}
