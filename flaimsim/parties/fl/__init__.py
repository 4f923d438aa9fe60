"""The federated-learning actors of FLAIM: clients with local selection, the aggregator, and aggregation through the MPC servers."""
