#!/usr/bin/python3
"""Creates Neutron's tables for NeutronServerLab: `neutron_schema.py <SQLAlchemy URL>`.

The schema comes from the models of this Neutron release (`models.head`: what the migrations lead
to), far quicker than `neutron-db-manage upgrade heads` (hundreds of migrations); the lab then runs
`neutron-db-manage stamp heads` to mark it current. This script starts while the database server
still boots (Neutron's imports take seconds), so it waits for the database to accept connections.
"""

import sys
import time

import sqlalchemy

from neutron.db.migration.models import head


def connect(engine, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            engine.connect().close()
            return
        except sqlalchemy.exc.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main():
    engine = sqlalchemy.create_engine(sys.argv[1])
    connect(engine)
    head.get_metadata().create_all(engine)
    engine.dispose()


if __name__ == "__main__":
    main()
