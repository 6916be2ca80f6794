# A deployment is imported by NAMESPACE/NAME and the id of a node of its
# cluster to reach it through (NAME@ADDRESS), joined by '@':
terraform import herd_deployment.web default/web@node-1@10.0.0.5:7443
