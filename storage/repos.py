"""The repositories of one transaction, bundled so a use case can reach every table group."""

from __future__ import annotations

from storage.announcements import AnnouncementRepo
from storage.audit import AuditRepo
from storage.boards import BoardRepo
from storage.channels import ChannelStateRepo
from storage.chats import ChatRepo
from storage.checkins import CheckinRepo
from storage.customers import CustomerRepo
from storage.db.sql import Statements
from storage.deliveries import DeliveryRepo
from storage.events import EventRepo
from storage.expiry import ExpiryRepo, TierReviewRepo
from storage.greetings import GreetingRepo
from storage.group_buys import GroupBuyRepo
from storage.inbox import InboxRepo
from storage.job_runs import JobRunRepo
from storage.ledger import LedgerRepo
from storage.members import MemberRepo
from storage.outbound import OutboundRepo
from storage.polls import PollRepo
from storage.privacy import PrivacyRepo
from storage.purchases import PurchaseRepo
from storage.referrals import ReferralRepo
from storage.rewards import RewardRepo
from storage.sales import SaleRepo
from storage.segments import SegmentRepo
from storage.stats import StatsRepo
from storage.tickets import TicketRepo
from storage.wechat_answers import WeChatAnswerRepo
from storage.wechat_nonces import WeChatNonceRepo
from storage.wechat_session import WeChatSessionRepo


class Repos:
    def __init__(self, conn: Statements) -> None:
        self.conn = conn
        self.members = MemberRepo(conn)
        self.ledger = LedgerRepo(conn)
        self.checkins = CheckinRepo(conn)
        self.purchases = PurchaseRepo(conn)
        self.inbox = InboxRepo(conn)
        self.outbound = OutboundRepo(conn)
        self.boards = BoardRepo(conn)
        self.chats = ChatRepo(conn)
        self.channel_state = ChannelStateRepo(conn)
        self.events = EventRepo(conn)
        self.announcements = AnnouncementRepo(conn)
        self.deliveries = DeliveryRepo(conn)
        self.sales = SaleRepo(conn)
        self.group_buys = GroupBuyRepo(conn)
        self.rewards = RewardRepo(conn)
        self.polls = PollRepo(conn)
        self.tickets = TicketRepo(conn)
        self.greetings = GreetingRepo(conn)
        self.segments = SegmentRepo(conn)
        self.stats = StatsRepo(conn)
        self.referrals = ReferralRepo(conn)
        self.wechat_nonces = WeChatNonceRepo(conn)
        self.wechat_answers = WeChatAnswerRepo(conn)
        self.wechat_session = WeChatSessionRepo(conn)
        self.customers = CustomerRepo(conn)
        self.expiry = ExpiryRepo(conn)
        self.tier_reviews = TierReviewRepo(conn)
        self.privacy = PrivacyRepo(conn)
        self.audit = AuditRepo(conn)
        self.job_runs = JobRunRepo(conn)
