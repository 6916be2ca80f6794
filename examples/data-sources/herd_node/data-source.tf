data "herd_node" "node1" {
  id = "node-1@10.0.0.5:7443"
}

output "node1_allocatable_memory" {
  value = data.herd_node.node1.allocatable_memory_bytes
}
