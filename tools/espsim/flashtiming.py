# How long the flash operations of a run would take on the SPI NOR flash an ESP32 module carries
# (4 MB, e.g. Winbond W25Q32JV on ESP32-WROOM-32E). Typical figures from the W25Q32JV datasheet
# (AC electrical characteristics): sector erase (4 KB) tSE 45 ms typ (400 ms max), page program
# (256 B) tPP 0.4 ms typ (3 ms max). Reads run at the SPI bus rate: MicroPython's ESP32_GENERIC is
# flashed DIO at 40 MHz (esptool's defaults for the board, ports/esp32/boards/ESP32_GENERIC), 2
# bits a clock = 10 MB/s, taken as 8 MB/s for command and address overhead.
# The worst case (max columns) is what a watchdog must allow for.
SECTOR_ERASE_MS = 45.0
SECTOR_ERASE_MAX_MS = 400.0
PAGE = 256
PAGE_PROGRAM_MS = 0.4
PAGE_PROGRAM_MAX_MS = 3.0
READ_BYTES_PER_MS = 8000.0


class FlashTiming:
    def __init__(self):
        self.sectors_erased = 0
        self.pages_programmed = 0
        self.bytes_read = 0

    def erase(self, sectors):
        self.sectors_erased += sectors

    def program(self, addr, n):
        # a program command stays within one 256-byte page: a write spans every page it touches
        if n > 0:
            self.pages_programmed += (addr + n - 1) // PAGE - addr // PAGE + 1

    def read(self, n):
        self.bytes_read += n

    def snapshot(self):
        return (self.sectors_erased, self.pages_programmed, self.bytes_read)

    def ms(self, since=(0, 0, 0), worst=False):
        """Predicted milliseconds of erase, program and read since `since` (a snapshot())."""
        e = self.sectors_erased - since[0]
        p = self.pages_programmed - since[1]
        r = self.bytes_read - since[2]
        return {"erase": e * (SECTOR_ERASE_MAX_MS if worst else SECTOR_ERASE_MS),
                "program": p * (PAGE_PROGRAM_MAX_MS if worst else PAGE_PROGRAM_MS),
                "read": r / READ_BYTES_PER_MS}
