// Run containers, services and secrets on machines that run herd's node daemon (agentd).
package herd
