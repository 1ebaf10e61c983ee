--
-- The API key and secret are superuser-only: others cannot set them, and see
-- them neither in SHOW, current_setting(), SHOW ALL nor pg_settings.
--
CREATE ROLE regress_user;
CREATE ROLE regress_monitor IN ROLE pg_read_all_settings;

SET mdfeed.api_key = 'K3y-0123456789abcdef';
SET mdfeed.api_secret = 'S3cr3t-0123456789abcdef';
SHOW mdfeed.api_key;
SELECT name, setting FROM pg_settings WHERE name LIKE 'mdfeed.api%' ORDER BY 1;

SET ROLE regress_user;
SHOW mdfeed.api_key;
SELECT current_setting('mdfeed.api_secret');
SELECT count(*) FROM pg_settings WHERE name LIKE 'mdfeed.api%';
SELECT count(*) FROM pg_settings WHERE setting LIKE '%0123456789abcdef%';
SET mdfeed.api_key = 'mine';
RESET ROLE;

-- even a member of pg_read_all_settings sees a mask, not the value
SET ROLE regress_monitor;
SHOW mdfeed.api_key;
SELECT name, setting FROM pg_settings WHERE name LIKE 'mdfeed.api%' ORDER BY 1;
RESET ROLE;

RESET mdfeed.api_key;
RESET mdfeed.api_secret;
DROP ROLE regress_user;
DROP ROLE regress_monitor;
