# Every pod labelled app=web on one node.
data "herd_pods" "web" {
  node = herd_node.node1.id
  labels = {
    app = "web"
  }
}

output "web_phases" {
  value = { for p in data.herd_pods.web.pods : p.name => p.phase }
}
