import unittest
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

from tasklog_client import canonical_uuid, log_id_key
from tasklog_client._common import backoff_delay, base_url_for, retry_after_seconds


class Helpers(unittest.TestCase):
    def test_backoff_doubles_with_jitter_up_to_the_cap(self):
        for attempt, ceiling in ((0, 0.25), (1, 0.5), (3, 2.0), (10, 15.0), (100, 15.0)):
            for _ in range(50):
                delay = backoff_delay(attempt, 0.25, 15.0)
                self.assertTrue(ceiling / 2 <= delay < ceiling, (attempt, delay))

    def test_retry_after_in_seconds_or_as_a_date(self):
        self.assertEqual(retry_after_seconds("1"), 1.0)
        self.assertEqual(retry_after_seconds(" 2 "), 2.0)
        self.assertIsNone(retry_after_seconds(None))
        self.assertIsNone(retry_after_seconds("soon"))
        later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
        self.assertTrue(25 <= retry_after_seconds(later) <= 30)
        self.assertEqual(retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT"), 0.0)

    def test_log_ids_compare_as_numbers(self):
        self.assertLess(log_id_key("999-9"), log_id_key("1000-0"))
        self.assertLess(log_id_key("1000-2"), log_id_key("1000-10"))

    def test_ids_and_urls_take_the_forms_the_server_takes(self):
        canonical = "0190a6c8-5b7e-7c3d-9e2f-1a2b3c4d5e6f"
        for form in (canonical.upper(), canonical.replace("-", ""), "{" + canonical + "}", "urn:uuid:" + canonical):
            self.assertEqual(canonical_uuid(form), canonical)
        self.assertIsNone(canonical_uuid("nope"))
        self.assertEqual(base_url_for("https://h.test:8443/base/", "ws"), "wss://h.test:8443/base")
        self.assertEqual(base_url_for("ws://h.test?x=1", "http"), "http://h.test")
        with self.assertRaises(ValueError):
            base_url_for("localhost:8000", "http")
