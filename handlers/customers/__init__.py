"""Customers (客户): bringing the shop's existing customers in from a spreadsheet (`vipbot import members`, see
`importing`, or a file sent to the bot, see `upload`), letting an imported customer claim their record
(`claim`), and exporting members for staff (/export members).

This package's `FEATURE` declares its commands to the core. The channels route a file sent to the bot to the
hidden command `FILE_COMMAND` and a shared phone number to `CONTACT_COMMAND`."""

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.core.roles import Role
from handlers.customers import claim, commands, upload
from handlers.customers.claim import CONTACT_COMMAND
from handlers.customers.upload import FILE_COMMAND, IMPORT_SUFFIXES

__all__ = ["CONTACT_COMMAND", "FEATURE", "FILE_COMMAND", "IMPORT_SUFFIXES"]

FEATURE = Feature(
    "customers",
    commands=(
        Command("export", commands.export, "export_cmd.summary", role=Role.MANAGER, prepare=commands.prepare_export),
        Command(
            FILE_COMMAND,
            upload.receive_file,
            "import_chat.summary",
            role=Role.MANAGER,
            hidden=True,
            prepare=upload.prepare_file,
        ),
        Command(
            "import",
            upload.confirm_import,
            "import_chat.summary",
            keywords=("确认", "confirm"),
            role=Role.MANAGER,
            prepare=upload.prepare_confirm,
        ),
        Command("phone", claim.claim_phone, "phone_claim.summary", keywords=("绑定手机",)),
        Command(CONTACT_COMMAND, claim.contact_shared, "phone_claim.summary", hidden=True),
        Command("claimcode", claim.claim_code, "claimcode.summary", role=Role.CASHIER),
    ),
)
