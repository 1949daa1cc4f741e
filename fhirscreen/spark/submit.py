"""The file to hand to spark-submit: the fhirscreen command line, run by Spark's driver.

    spark-submit [Spark options] "$(python3 -c 'import fhirscreen.spark.submit as m; print(m.__file__)')" \
        screen --engine spark --data s3a://bucket/export/ --out /srv/screening/today
"""

from __future__ import annotations

from fhirscreen.cli import main

if __name__ == "__main__":
    main(prog_name="fhirscreen")
