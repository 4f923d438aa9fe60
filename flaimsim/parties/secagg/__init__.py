"""SecAgg+ secure aggregation: protocol steps, cryptography, and the message formats on the wire."""
