# Adopt a node whose agentd listens on 10.0.0.5:7443. Its certificate must
# carry the name "node-1" (herdctl certs node node-1 --ip 10.0.0.5).
resource "herd_node" "node1" {
  name    = "node-1"
  address = "10.0.0.5:7443"
  labels = {
    zone = "rack-a"
  }
}

# A node whose agentd founded a cluster of its own (started with
# --cluster-cidr, --gossip-listen and --gossip-key, without --join) joins
# the cluster of node-1, whose gossip listener is 10.0.0.5:7946.
resource "herd_node" "node2" {
  name    = "node-2"
  address = "10.0.0.6:7443"
  join    = ["10.0.0.5:7946"]
}

output "members" {
  value = herd_node.node2.cluster_members[*].name
}
