"""Software Eastron SDM120 / SDM630 meters over Modbus TCP and RTU (see meter_sim/README.md)."""

from meter_sim.clock import SimClock
from meter_sim.farm import MeterFarm
from meter_sim.meter import Meter
from meter_sim.profiles import Household, Profile, parse_profile

__all__ = ["Household", "Meter", "MeterFarm", "Profile", "SimClock", "parse_profile"]
