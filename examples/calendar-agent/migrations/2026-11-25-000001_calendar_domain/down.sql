DROP TABLE calendar_events;
DROP TABLE calendars;
DROP TABLE users;
DROP TABLE workspaces;
