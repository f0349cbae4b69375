"""Customers (客户): bringing the shop's existing customers in from a spreadsheet (`vipbot import members`, see
`importing`) and exporting members for staff (/export members).

This package's `FEATURE` declares its commands to the core."""

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.customers import commands

FEATURE = Feature(
    "customers",
    commands=(Command("export", commands.export, "export_cmd.summary", staff=True, prepare=commands.prepare_export),),
)
