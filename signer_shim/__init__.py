"""The signer's room: everything that touches the HSM. It trusts nobody else: operations arrive as
plain values with their approvals, and the HSM is reached only through one worker process."""
