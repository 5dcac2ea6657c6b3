"""``python -m atp_bridge.fulfillment [--bind HOST:PORT] [--seed N]`` runs the
emulator, the same as ``atp-bridge fulfillment-emulator``."""
from .cli import fulfillment_emulator

if __name__ == "__main__":
    fulfillment_emulator(prog_name="python -m atp_bridge.fulfillment")
